"""The in-pod toolbox: what podmedic runs inside application containers, from any image.

Layout (built by `podmedic toolbox build`, shipped in the image at /opt/podmedic/toolbox,
copied into each pod by the init container's `podmedic toolbox install /podmedic`):

    bin/busybox   Debian busybox-static: a shell and the applets, statically linked
    bin/tini      Debian tini-static: PID 1 that reaps zombies and forwards signals
    bin/sigreset  a small static C program: starts the app with default signal actions, leading
                  its own process group, with the container's whole environment (see .c)
    bin/<applet>  links to busybox (created at install), the collector's PATH
    supervise     the supervisor wrapper (POSIX sh)
    pmctl         state for people and exec probes (POSIX sh)
    forensics     the preStop collector (POSIX sh)

Why busybox sh and tini: the wrapper must run in images with no shell, no libc and no Python
(distroless, scratch). Two static binaries carry everything; the scripts are small enough to
read in a review, and tini does the one thing sh is bad at as PID 1 (reaping every orphan).
Scripts name the toolbox's own interpreter: an image without /bin/sh fails a `#!/bin/sh` script
with exit 128, so `install` rewrites the interpreter line and the webhook invokes
`<mount>/bin/busybox sh <script>` explicitly.
"""
