"""The frontends: REST (:mod:`lossd.api.rest`) and gRPC (:mod:`lossd.api.rpc`), each only
translating between its wire format and a :class:`~lossd.calls.Call` for the engine; what
both share (the V2 protocol, the registry's description, API keys, TLS) lives here."""
