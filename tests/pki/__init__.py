"""Tests of webhook.pki."""
