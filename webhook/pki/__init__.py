"""The webhook's PKI: x509 (in memory), local (a directory), cluster (Secrets and caBundle).
No argparse, no printing: webhook.cli.certs is the command line."""
