"""Keeping this node's Service data path equal to what the Services and the status records ask for, each pass."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path

from gitops.cluster import ClusterView
from gitops.identity import Observed
from gitops.model import ManifestSet
from gitops.services import nft
from gitops.services.dns import DnsServer, ExternalNames, dns_ip
from gitops.services.endpoints import endpoints, replica_endpoints
from gitops.status import ErrorStatus, NodeStatus

log = logging.getLogger(__name__)


class ServiceProxy:
    """Programs the node's table and DNS server when what they should hold changes; stops both with no Service."""

    def __init__(self, node: str, address: str, state_dir: Path, nft_path: str = nft.NFT) -> None:
        self.node = node
        self.nft_path = nft_path
        self.dns = DnsServer(node, address, state_dir)
        self.external = ExternalNames()
        # The script last applied; None: none by this process. A node that never had Services never runs nft
        # or dnsmasq, so it needs neither package nor CAP_NET_ADMIN.
        self._applied: str | None = None
        # Virtual IPs of the headless Services' serving replicas, as last computed: their names resolve.
        self._ready: frozenset[str] = frozenset()

    def serve_names(self, mset: ManifestSet, errors: list[ErrorStatus]) -> str | None:
        """Run the DNS server for this revision's Services; the DNS virtual IP containers should use, or None.

        None (Docker's own resolver) without Services, or when the DNS server cannot run (an error says why).
        """
        if not mset.services:
            self.dns.stop()
            return None
        try:
            self.dns.serve(mset.services, self._ready, self._resolved(mset))
        except (OSError, RuntimeError) as e:
            errors.append(ErrorStatus(field="services", message=f"the DNS server does not run: {e}"))
            return None
        return dns_ip(mset.cluster.service_cidr)

    def sync(self, mset: ManifestSet, view: ClusterView, own: NodeStatus, containers: Iterable[Observed]) -> str | None:
        """Apply this pass's table (our own rows are ``own``, fresher than our published record); an error or None.

        ``containers`` are this node's: its endpoints are reached at their containers' own addresses.
        """
        script: str | None = None
        if mset.services:
            reports = {**view.reports, self.node: own}
            local = {c.rid: c.network for c in containers if c.network and c.published}
            live = view.live | {self.node}
            backends = endpoints(mset.services, mset.workloads, reports, live, self.node, local)
            replicas = replica_endpoints(mset.services, mset.workloads, reports, live, self.node, local)
            server = nft.Backend(self.dns.address, self.dns.port)
            dns = (dns_ip(mset.cluster.service_cidr), server)
            script = nft.render(self.node, mset.services, backends, dns, replicas)
            self._ready = frozenset(replicas)
        if script != self._applied:
            try:
                if script is None:
                    nft.remove(self.node, self.nft_path)
                else:
                    nft.apply(script, self.nft_path)
            except nft.NftError as e:
                log.warning("services: programming table %s failed: %s", nft.table_name(self.node), e)
                return f"services: nftables refused the rules: {e}"
            self._applied = script
        # Replicas' names change with their readiness: served once the rules reach them.
        return self._rename(mset) if mset.services else None

    def _rename(self, mset: ManifestSet) -> str | None:
        """Serve the names of the replicas serving now; an error or None."""
        try:
            self.dns.serve(mset.services, self._ready, self._resolved(mset))
        except (OSError, RuntimeError) as e:
            return f"services: the DNS server does not run: {e}"
        return None

    def _resolved(self, mset: ManifestSet) -> dict[str, tuple[str, ...]]:
        targets = (s.external_name.rstrip(".") for s in mset.services if s.external_name)
        return self.external.addresses(targets, time.monotonic())

    def stop(self) -> None:
        """Stop the DNS server; the table stays, so traffic keeps flowing while the daemon restarts."""
        self.dns.stop()
        self.external.stop()
