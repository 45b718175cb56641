"""What the API and the workers share below them: the settings and the log line format.

`app/` and `worker/` both import this package; it imports neither (docs/architecture.md).
"""

from service_config.logging import JsonLineFormatter
from service_config.settings import Settings, get_settings

__all__ = ["JsonLineFormatter", "Settings", "get_settings"]
