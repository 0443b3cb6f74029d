"""podmedic: a Kubernetes mutating admission webhook that hardens pods for health checking
and post-mortem debugging (default probes, supervisor wrapper, per-pod log directory,
preStop forensics)."""

__version__ = "0.1.0"
