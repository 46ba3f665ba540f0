"""Which adapter and which authenticator serve each platform."""

from __future__ import annotations

from collections.abc import Callable

from connector.config import PlatformSettings
from connector.models import Platform
from connector.observability.redaction import Redactor
from connector.platforms import elasticpath, sellercloud, ventmere, vucustom
from connector.platforms.auth import Authenticator
from connector.platforms.base import PlatformAdapter
from connector.platforms.transport import Transport

ADAPTERS: dict[Platform, type[PlatformAdapter]] = {
    Platform.VUCUSTOM: vucustom.VuCustomAdapter,
    Platform.SELLERCLOUD: sellercloud.SellercloudAdapter,
    Platform.ELASTICPATH: elasticpath.ElasticPathAdapter,
    Platform.VENTMERE: ventmere.VentmereAdapter,
}

AuthenticatorFactory = Callable[[PlatformSettings, Transport, Redactor], Authenticator]

AUTHENTICATORS: dict[Platform, AuthenticatorFactory] = {
    Platform.VUCUSTOM: vucustom.authenticator,
    Platform.SELLERCLOUD: sellercloud.authenticator,
    Platform.ELASTICPATH: elasticpath.authenticator,
    Platform.VENTMERE: ventmere.authenticator,
}


def build_adapter(
    platform: Platform, settings: PlatformSettings, transport: Transport, redactor: Redactor
) -> PlatformAdapter:
    """The platform's adapter with its authenticator; `ConfigError` when credentials are missing.

    The platform's credentials (and every token fetched later) are added to `redactor`.
    """
    authenticator = AUTHENTICATORS[platform](settings, transport, redactor)
    return ADAPTERS[platform](settings, transport, authenticator, redactor)
