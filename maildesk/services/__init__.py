"""Use cases shared by the CLI and the pipeline: the one ticket-change path, customers and
privacy, admin, rules check/test/replay, explain, describe, init."""
