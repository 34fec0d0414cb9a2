"""Docker backend: each OpenSIPS node is a container, each cluster a Docker network.

Built on testcontainers (with its Ryuk reaper disabled: Ryuk needs an image from a
registry, and we clean up ourselves). One module per job:

- ``engine`` — access to the engine, labels, the at-exit registry and ``sweep``:
  everything is labelled with the run id, so leftovers of killed runs can be removed;
- ``host_tools`` — tcpdump and bridge tweaks on the host, or in a host-network helper
  container when the harness is not root;
- ``network`` — one user-defined bridge per cluster, on a subnet of its own (the
  engine refusing an overlapping subnet makes it try the next);
- ``node`` — an OpenSIPS container (NET_ADMIN and ``ip_nonlocal_bind`` so a backup
  can bind the VIP before owning it; death observed, not guessed);
- ``backend`` — the `harness.cluster.interfaces.Backend` a Cluster uses: nodes, SIP client
  containers, the capture host, sockets.
"""
