"""`admuse keys generate`: an Ed25519 key pair for signing models.

The private key goes to the trainer (ADMUSE_TRAINER_SIGNING_KEY or a mounted file named by
ADMUSE_TRAINER_SIGNING_KEY_FILE), the public key to inference (ADMUSE_INFERENCE_TRUSTED_KEYS,
comma-separated so a rotation can trust the old and the new key for a while).
"""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console

__all__ = ["register"]

keys_app = typer.Typer(help="Model-signing keys.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")


@keys_app.command("generate")
def generate(
    out: Path | None = typer.Option(  # noqa: B008 - typer's declaration style
        None,
        "--out",
        help="Write <out>.key (private, mode 0600) and <out>.pub instead of printing env lines.",
    ),
) -> None:
    """Make a key pair; print it as environment lines (or write two files)."""
    from services.common.signing import generate_key_pair

    private, public, key_id = generate_key_pair()
    console = Console(stderr=True)
    if out is None:
        typer.echo(f"ADMUSE_TRAINER_SIGNING_KEY={private}")
        typer.echo(f"ADMUSE_INFERENCE_TRUSTED_KEYS={public}")
    else:
        key_path, pub_path = out.with_suffix(".key"), out.with_suffix(".pub")
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(private + "\n")
        pub_path.write_text(public + "\n")
        console.print(f"wrote {key_path} (private, 0600) and {pub_path}")
    console.print(f"key id {key_id}")
