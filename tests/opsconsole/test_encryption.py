"""Secrets at rest: encrypted in the table, rotated in place, tamper-evident, never in HTML."""

import io

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from opsconsole import crypto
from opsconsole.crypto import DecryptionError
from tests.testapp.models import Vault

SECRET = "xoxb-slack-token-4f9a2c"


def raw(vault: Vault, column: str = "secret") -> str:
    """The value as stored in the table, bypassing the field's decryption."""
    assert column in ("secret", "optional_secret")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM testapp_vault WHERE id = %s", [vault.pk])  # noqa: S608
        return cursor.fetchone()[0]


def test_it_round_trips_and_never_stores_the_clear_text(db):
    vault = Vault.objects.create(name="slack", secret=SECRET)
    stored = raw(vault)
    assert SECRET not in stored
    assert stored.startswith("v1:")
    assert Vault.objects.get(pk=vault.pk).secret == SECRET


def test_two_encryptions_of_one_value_differ(db):
    a = Vault.objects.create(name="a", secret=SECRET)
    b = Vault.objects.create(name="b", secret=SECRET)
    assert raw(a) != raw(b)


def test_a_tampered_ciphertext_raises_instead_of_returning_garbage(db):
    vault = Vault.objects.create(name="slack", secret=SECRET)
    token = raw(vault)
    flipped = token[:-5] + ("A" if token[-5] != "A" else "B") + token[-4:]
    with connection.cursor() as cursor:
        cursor.execute("UPDATE testapp_vault SET secret = %s WHERE id = %s", [flipped, vault.pk])
    with pytest.raises(DecryptionError, match="modified or corrupted"):
        Vault.objects.get(pk=vault.pk)


def test_a_ciphertext_moved_to_another_field_does_not_decrypt(db):
    vault = Vault.objects.create(name="slack", secret=SECRET)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE testapp_vault SET optional_secret = secret WHERE id = %s", [vault.pk]
        )
    with pytest.raises(DecryptionError):
        Vault.objects.get(pk=vault.pk)


def test_a_value_from_an_unknown_key_names_the_problem(db, settings):
    vault = Vault.objects.create(name="slack", secret=SECRET)
    settings.OPSCONSOLE_ENCRYPTION_KEYS = crypto.parse_keys(crypto.generate_key())
    with pytest.raises(DecryptionError, match="not in OPSCONSOLE_ENCRYPTION_KEYS"):
        Vault.objects.get(pk=vault.pk)


def test_rotation_re_encrypts_every_row_with_the_new_first_key(db, settings):
    old_keys = settings.OPSCONSOLE_ENCRYPTION_KEYS
    rows = [
        Vault.objects.create(name=f"v{i}", secret=f"secret-{i}", optional_secret="x")
        for i in range(5)
    ]
    old_id = crypto.key_id(old_keys[0])
    assert {crypto.token_key_id(raw(v)) for v in rows} == {old_id}

    new_key = crypto.parse_keys(crypto.generate_key())[0]
    with override_settings(OPSCONSOLE_ENCRYPTION_KEYS=[new_key, *old_keys]):
        call_command("rotate_encryption_key", stdout=io.StringIO())
        assert {
            crypto.token_key_id(raw(v, c)) for v in rows for c in ("secret", "optional_secret")
        } == {crypto.key_id(new_key)}
    # The old key can now go: the values read with the new key alone.
    with override_settings(OPSCONSOLE_ENCRYPTION_KEYS=[new_key]):
        assert sorted(Vault.objects.values_list("secret", flat=True)) == [
            f"secret-{i}" for i in range(5)
        ]


def test_admin_change_page_never_renders_the_secret(admin_client):
    vault = Vault.objects.create(name="slack", secret=SECRET)
    page = admin_client.get(f"/admin/testapp/vault/{vault.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert SECRET not in html
    assert raw(vault) not in html
    assert "A value is stored" in html


def test_admin_blank_keeps_the_secret_and_a_new_value_replaces_it(admin_client):
    vault = Vault.objects.create(name="slack", secret=SECRET)
    url = f"/admin/testapp/vault/{vault.pk}/change/"
    response = admin_client.post(url, {"name": "renamed", "secret": "", "optional_secret": ""})
    assert response.status_code == 302
    vault.refresh_from_db()
    assert (vault.name, vault.secret) == ("renamed", SECRET)

    admin_client.post(url, {"name": "renamed", "secret": "new-token", "optional_secret": ""})
    vault.refresh_from_db()
    assert vault.secret == "new-token"


def test_admin_clear_box_removes_an_optional_secret(admin_client):
    vault = Vault.objects.create(name="slack", secret=SECRET, optional_secret="remove-me")
    url = f"/admin/testapp/vault/{vault.pk}/change/"
    admin_client.post(
        url, {"name": "slack", "secret": "", "optional_secret": "", "optional_secret-clear": "on"}
    )
    vault.refresh_from_db()
    assert vault.optional_secret == ""
    assert vault.secret == SECRET


def test_admin_refuses_a_new_record_without_its_required_secret(admin_client):
    response = admin_client.post("/admin/testapp/vault/add/", {"name": "empty", "secret": ""})
    assert response.status_code == 200
    assert "This field cannot be blank." in response.content.decode()
    assert not Vault.objects.exists()
