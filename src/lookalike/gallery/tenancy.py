"""One tenant's view of the galleries: the base every part of :class:`GalleryService` stands on.

The store keys a tenant's groups as ``"tenant/GroupId"`` (a GroupId never contains "/"); the
default tenant's keys are bare. Every gallery operation turns the caller's GroupId into that key
(:meth:`TenantView._key`), reads the group through :meth:`TenantView._group` (so that another
tenant's group does not exist), and hands records back without the prefix
(:meth:`TenantView._public`); the messages name the GroupId as the tenant knows it. Written once
here, the service's parts (pictures, search, duplicates) cannot word or namespace it two ways.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Self

from lookalike import errors
from lookalike.gallery import validation as v
from lookalike.storage import rules
from lookalike.storage.base import GroupRecord, ImageRecord, Store


class TenantView:
    """The galleries of one store as one tenant sees them; :meth:`for_tenant` gives another's."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.tenant = ""
        self._namespace = ""

    def for_tenant(self, tenant: str) -> Self:
        """The same galleries as seen by ``tenant`` ("" is the default tenant of open mode)."""
        if tenant == self.tenant:
            return self
        if tenant:
            v.tenant(tenant)
        view = copy.copy(self)
        view.tenant, view._namespace = tenant, f"{tenant}/" if tenant else ""
        return view

    def _key(self, group_id: str) -> str:
        return self._namespace + group_id

    def _public[R: (GroupRecord, ImageRecord)](self, record: R) -> R:
        """A record as its tenant sees it: the GroupId without the tenant's prefix."""
        if not self._namespace:
            return record
        return dataclasses.replace(record, group_id=record.group_id.removeprefix(self._namespace))

    def _group(self, group_id: str, *, count: bool = False) -> GroupRecord:
        """The stored record (its key carries the tenant); ImageGroupIdNotExist in any other tenant.
        ``count``: with its PicCount (which costs a query on some backends)."""
        gid = v.group_id(group_id)
        group = self.store.get_group(self._key(gid), count=count)
        if group is None:
            raise rules.no_such_group(gid)
        return group

    def _not_found(self, group: GroupRecord, pic: str | None, entity: str | None = None) -> errors.ImageNotFound:
        """The one wording of a missing picture (``pic``), entity's picture, or entity (no ``pic``)."""
        what = f"entity {entity!r}" if pic is None else f"picture {pic!r}"
        if pic is not None and entity is not None:
            what += f" of entity {entity!r}"
        return errors.ImageNotFound(f"{what} is not in group {self._public(group).group_id!r}")
