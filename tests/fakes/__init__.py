"""Fake external services for the test suite: real local HTTP servers with state, talked to over HTTP."""
