"""Keeping this node's nftables table equal to what the Services and the status records ask for, each pass."""

from __future__ import annotations

import logging

from gitops.cluster import ClusterView
from gitops.model import ManifestSet
from gitops.services import nft
from gitops.services.endpoints import endpoints
from gitops.status import NodeStatus

log = logging.getLogger(__name__)


class ServiceProxy:
    """Programs the node's table when what it should hold changes; removes it when no Service is left."""

    def __init__(self, node: str, nft_path: str = nft.NFT) -> None:
        self.node = node
        self.nft_path = nft_path
        # The script last applied; None: none by this process. A node that never had Services never runs nft,
        # so it needs neither the binary nor CAP_NET_ADMIN.
        self._applied: str | None = None

    def sync(self, mset: ManifestSet, view: ClusterView, own: NodeStatus) -> str | None:
        """Apply this pass's rules (our own rows are ``own``, fresher than our published record); an error or None."""
        if mset.services:
            reports = {**view.reports, self.node: own}
            backends = endpoints(mset.services, mset.workloads, reports, view.live | {self.node})
            script: str | None = nft.render(self.node, mset.services, backends)
        else:
            script = None
        if script == self._applied:
            return None
        try:
            if script is None:
                nft.remove(self.node, self.nft_path)
            else:
                nft.apply(script, self.nft_path)
        except nft.NftError as e:
            log.warning("services: programming table %s failed: %s", nft.table_name(self.node), e)
            return f"services: nftables refused the rules: {e}"
        self._applied = script
        return None
