"""One adapter per platform, over a shared transport and auth layer.

Imports run one way: `http.py` (value types) ← `transport.py` ← `auth.py` ← `base.py` ← the adapters.

- `http.py`: requests, responses, `Retry-After`, the statuses every platform retries.
- `transport.py`: the only aiohttp caller; its exceptions become the error tree.
- `auth.py`: static headers, Basic, token flows (cached, refreshed single-flight).
- `base.py`: the adapter interface; what an answer means (`classify`) is the adapter's to say.
- `vucustom.py`, `sellercloud.py`, `elasticpath.py`, `ventmere.py`: one platform each, with its
  token endpoint where it has one (Sellercloud's and Elastic Path's token refresh).
- `registry.py`: the adapter for a platform's settings.
"""
