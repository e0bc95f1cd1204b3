"""Pure routing decisions: rules file, screening and limits. Import submodules directly."""
