from voice.store.store import CallInfo, ContactInfo, Store, UserInfo, as_utc

__all__ = ["CallInfo", "ContactInfo", "Store", "UserInfo", "as_utc"]
