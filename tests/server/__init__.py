"""Tests of webhook.server."""
