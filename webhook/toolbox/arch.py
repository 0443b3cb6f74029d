"""Architecture names: the toolbox is static binaries for one architecture, and nodes name theirs
in the label kubernetes.io/arch with Go's GOARCH names (amd64, arm64), while a machine names
its own (uname -m: x86_64, aarch64). Pure: the engine's configuration checks names with it.
"""

from __future__ import annotations

# The GOARCH names of the architectures Linux nodes run on.
ARCHITECTURES = frozenset(("amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64", "loong64", "mips64le"))
# A machine's name (platform.machine(), uname -m) to its GOARCH name.
GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm", "i686": "386", "i386": "386",
          "loongarch64": "loong64", "mips64": "mips64le", **{name: name for name in ARCHITECTURES}}


def goarch(machine: str) -> str:
    """The GOARCH name of a machine name; an unknown one as it is, which the configuration then
    refuses by name."""
    return GOARCH.get(machine, machine)
