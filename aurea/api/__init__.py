"""The edge: servicers, proto <-> domain conversion, the error table and interceptors."""
