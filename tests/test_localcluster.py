"""raybake.localcluster without Ray: what a node's command line is made of
(the clusters themselves run in test_ray_e2e.py and test_kuberay.py)."""

import socket

from raybake.localcluster import free_ports


def test_the_ports_of_a_node_are_all_different_and_free():
    ports = free_ports([f"p{i}" for i in range(64)])
    assert len(set(ports.values())) == 64
    for port in list(ports.values())[:8]:  # nothing holds them once chosen
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))

