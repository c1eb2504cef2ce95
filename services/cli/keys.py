"""`casewire rotate-encryption-key`: every stored secret re-encrypted with the first key."""

from services.casestore.automations import reencrypt_secrets
from services.casestore.repo import access as access_rows
from services.casestore.webhook_tokens import reencrypt_tokens
from shared.crypto import SecretBox
from shared.db import create_pool
from shared.settings import Settings


async def rotate_encryption_key(settings: Settings) -> int:
    """Re-encrypt every stored secret (automations', signed webhooks') with the first key."""
    box = SecretBox(settings.encryption_key)
    pool = await create_pool(settings)
    try:
        async with pool.acquire() as conn, conn.transaction():
            changed = await reencrypt_secrets(conn, box)
            hooks = await access_rows.reencrypt_verify_secrets(conn, box.rotate)
            tokens = await reencrypt_tokens(conn, box)
    finally:
        await pool.close()
    print(f"{changed} automation(s), {tokens} webhook token(s) and {hooks} signed incoming "
          "webhook secret(s) re-encrypted with the first key of CASEWIRE_ENCRYPTION_KEY; the "
          "other keys may now be removed")
    return 0
