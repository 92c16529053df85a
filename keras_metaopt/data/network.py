"""A fast reachability probe, so that offline runs fail in seconds, not minutes."""

import threading
import urllib.error
import urllib.request

from keras_metaopt.data.offline_error import OFFLINE_ALTERNATIVES, OfflineError

PROBE_TIMEOUT_S = 5.0


def network_error(url, timeout=PROBE_TIMEOUT_S):
    """Why `url`'s server cannot be reached, or None if it answers.

    Sends one HEAD request (honouring proxy settings) and gives up after
    `timeout` seconds in total, name resolution included. Any HTTP answer,
    even an error status, counts as reachable.
    """
    outcome = {}

    def probe():
        try:
            request = urllib.request.Request(url, method="HEAD")
            with urllib.request.urlopen(request, timeout=timeout):
                pass
        except urllib.error.HTTPError:
            pass
        except Exception as err:  # Any failure means unreachable.
            reason = getattr(err, "reason", err)
            outcome["error"] = f"{type(err).__name__}: {reason}"

    thread = threading.Thread(target=probe, name="network-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return f"no answer within {timeout:g} s"
    return outcome.get("error")


def require_network(url, what, timeout=PROBE_TIMEOUT_S):
    """Raises `OfflineError` naming `what` and the offline alternatives if
    `url` is unreachable; returns None otherwise."""
    error = network_error(url, timeout)
    if error is not None:
        raise OfflineError(
            f"{what} needs the network, but {url} is unreachable ({error}). "
            f"{OFFLINE_ALTERNATIVES}"
        )
