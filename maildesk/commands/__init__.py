"""Thin CLI sub-apps: parse arguments, call one service, print."""
