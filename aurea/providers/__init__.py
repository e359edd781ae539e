"""Provider adapters: one per upstream API, all behind the Provider protocol in ``_base``."""
