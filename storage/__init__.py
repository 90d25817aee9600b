"""relaylog's storage: schema, migrations and the stores behind one interface."""

from storage.base import Store, open_store
from storage.models import Row

__all__ = ["Row", "Store", "open_store"]
