"""Tests of webhook.engine."""
