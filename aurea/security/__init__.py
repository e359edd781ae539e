"""Transport security and hostile-input defences: TLS and mTLS for every port (reloaded on
SIGHUP), and the per-call input limits both doors enforce (``[input]``)."""

from aurea.security._limits import InputLimits, current_limits, input_limits, limit_text
from aurea.security._tls import TlsFiles

__all__ = ["InputLimits", "TlsFiles", "current_limits", "input_limits", "limit_text"]
