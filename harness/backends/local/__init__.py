"""Local backend: real OpenSIPS 1.10 processes, each in its own network namespace.

Why namespaces: every node must listen on the *same* virtual IP (a 1.10 backup only
accepts dialogs whose sockets it owns), which one host can only do once; namespaces
give each node its own stack, and a bridge joins them like a LAN. Nothing is added to
the host's own namespace. One module per job:

- ``netns`` — iproute2 calls, sockets created inside a namespace, gratuitous ARP;
- ``topology`` — the hub namespace with its bridge, a namespace per node and client;
- ``node`` — one OpenSIPS process tree: start, watch, signal, logs;
- ``backend`` — the `harness.cluster.interfaces.Backend` a Cluster uses.

Needs root (CAP_NET_ADMIN + CAP_SYS_ADMIN); `local_backend_unavailable()` says why not.
"""
