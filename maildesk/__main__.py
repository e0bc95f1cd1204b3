"""`python -m maildesk` runs the CLI (never run package modules as scripts)."""

from maildesk.cli import main

if __name__ == "__main__":
    main()
