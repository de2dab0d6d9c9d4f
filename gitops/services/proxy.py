"""Keeping this node's Service data path equal to what the Services and the status records ask for, each pass."""

from __future__ import annotations

import logging
from pathlib import Path

from gitops.cluster import ClusterView
from gitops.model import ManifestSet
from gitops.services import nft
from gitops.services.dns import DnsServer, dns_ip
from gitops.services.endpoints import endpoints
from gitops.status import NodeStatus

log = logging.getLogger(__name__)


class ServiceProxy:
    """Programs the node's table and DNS server when what they should hold changes; stops both with no Service."""

    def __init__(self, node: str, address: str, state_dir: Path, nft_path: str = nft.NFT) -> None:
        self.node = node
        self.nft_path = nft_path
        self.dns = DnsServer(node, address, state_dir)
        # The script last applied; None: none by this process. A node that never had Services never runs nft
        # or dnsmasq, so it needs neither package nor CAP_NET_ADMIN.
        self._applied: str | None = None

    def dns_ip(self, mset: ManifestSet) -> str | None:
        """The DNS virtual IP containers should use now (None: no Services, Docker's resolver)."""
        return dns_ip(mset.cluster.service_cidr) if mset.services else None

    def sync(self, mset: ManifestSet, view: ClusterView, own: NodeStatus) -> str | None:
        """Apply this pass's rules (our own rows are ``own``, fresher than our published record); an error or None."""
        script: str | None = None
        problem: str | None = None
        if mset.services:
            try:
                self.dns.serve(mset.services)
            except (OSError, RuntimeError) as e:
                problem = f"services: the DNS server does not run: {e}"
            reports = {**view.reports, self.node: own}
            backends = endpoints(mset.services, mset.workloads, reports, view.live | {self.node})
            server = nft.Backend(self.dns.address, self.dns.port)
            script = nft.render(self.node, mset.services, backends, (dns_ip(mset.cluster.service_cidr), server))
        else:
            self.dns.stop()
        if script == self._applied:
            return problem
        try:
            if script is None:
                nft.remove(self.node, self.nft_path)
            else:
                nft.apply(script, self.nft_path)
        except nft.NftError as e:
            log.warning("services: programming table %s failed: %s", nft.table_name(self.node), e)
            return f"services: nftables refused the rules: {e}"
        self._applied = script
        return problem

    def stop(self) -> None:
        """Stop the DNS server; the table stays, so traffic keeps flowing while the daemon restarts."""
        self.dns.stop()
