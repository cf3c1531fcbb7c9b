"""MLflow's basic-auth app in the compose stack: its configuration and the pynomaly user.

MLflow's auth app reads its settings from an ini file (``MLFLOW_AUTH_CONFIG_PATH``), and the
database of users and permissions is named there, password included. So that the password lives
only in the environment (docker/.env), never in a committed file, an image or on a command line
(``ps`` shows those), the ``mlflow`` service starts through this script::

    python docker/mlflow/auth.py serve mlflow server --app-name basic-auth ...

which writes the ini from the environment (mode 0600) and then replaces itself with the command.
The one-shot ``mlflow_users`` service runs::

    python docker/mlflow/auth.py users

once the server answers: as MLflow's admin it creates the non-admin user the code server and its
runs authenticate as (``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``, MLflow's own
variables), resets its password to the configured one (rotation is: change the secret, restart),
and grants it MANAGE on Pynomaly's experiments (``pynomaly/<feed>``) and registered models
(``pynomaly-<feed>``) that have no grant for it yet, which are the ones an unauthenticated
deployment created before auth was switched on. Everything it creates itself later, it owns
(MLflow gives the creator MANAGE). See docs/deploy.md, "Authentication".

Only the standard library and MLflow: the script runs in the image's Python without Pynomaly.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

DATABASE_URI_ENV = "MLFLOW_AUTH_DATABASE_URI"
CONFIG_PATH_ENV = "MLFLOW_AUTH_CONFIG_PATH"
DEFAULT_PERMISSION_ENV = "MLFLOW_AUTH_DEFAULT_PERMISSION"
ADMIN_USERNAME_ENV = "MLFLOW_AUTH_ADMIN_USERNAME"
ADMIN_PASSWORD_ENV = "MLFLOW_AUTH_ADMIN_PASSWORD"
USERNAME_ENV = "MLFLOW_TRACKING_USERNAME"
PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"
TRACKING_URI_ENV = "PYNOMALY_MLFLOW_TRACKING_URI"
# READ: every MLflow user sees every experiment and model; only owners (and grants) change them
DEFAULT_PERMISSION = "READ"
PERMISSIONS = ("READ", "USE", "EDIT", "MANAGE", "NO_PERMISSIONS")
# Pynomaly's tracker names experiments "{prefix}/{feed}" and registered models "{prefix}-{feed}"
DEFAULT_PREFIX = "pynomaly"


class AuthSetupError(RuntimeError):
    """A setting the auth app needs is missing or malformed; the message names the variable."""


def require(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "")
    if not value:
        raise AuthSetupError(f"{name} is not set: set it in docker/.env (see docker/.env.example)")
    if "\n" in value or "\r" in value:
        raise AuthSetupError(f"{name} contains a line break")
    return value


def render_config(env: Mapping[str, str]) -> str:
    """The ``[mlflow]`` ini MLflow's auth app reads, from ``MLFLOW_AUTH_DATABASE_URI`` and
    ``MLFLOW_AUTH_DEFAULT_PERMISSION``.

    The admin's name and password are not written: MLflow reads ``MLFLOW_AUTH_ADMIN_USERNAME`` and
    ``MLFLOW_AUTH_ADMIN_PASSWORD`` from the environment itself. MLflow reads the file with
    configparser's interpolation, so a ``%`` (URL-encoded password characters) is doubled.
    """
    database_uri = require(env, DATABASE_URI_ENV)
    permission = env.get(DEFAULT_PERMISSION_ENV) or DEFAULT_PERMISSION
    if permission not in PERMISSIONS:
        raise AuthSetupError(
            f"{DEFAULT_PERMISSION_ENV}={permission!r} is not one of {', '.join(PERMISSIONS)}"
        )
    return "\n".join(
        [
            "# written by docker/mlflow/auth.py from the environment at start; not to be edited",
            "[mlflow]",
            f"default_permission = {permission}",
            f"database_uri = {database_uri.replace('%', '%%')}",
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth",
            "grant_default_workspace_access = false",
            "",
        ]
    )


def write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by this user only (it holds the auth database's password),
    replacing the file in one step so a restarting server never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def serve(command: Sequence[str], env: Mapping[str, str] = os.environ) -> None:
    """Write the auth config to ``$MLFLOW_AUTH_CONFIG_PATH``, then exec ``command``."""
    if not command:
        raise AuthSetupError(
            "serve needs the command to run, e.g. `mlflow server --app-name basic-auth ...`"
        )
    path = Path(require(env, CONFIG_PATH_ENV))
    write_private(path, render_config(env))
    os.execvp(command[0], list(command))


def ensure_service_user(
    env: Mapping[str, str] = os.environ, prefix: str = DEFAULT_PREFIX
) -> list[str]:
    """As MLflow's admin: create or update the pynomaly user and grant it its resources.

    Returns what it did, one line per change, for the service's log.
    """
    uri = require(env, TRACKING_URI_ENV)
    admin = env.get(ADMIN_USERNAME_ENV) or "admin"
    admin_password = require(env, ADMIN_PASSWORD_ENV)
    username, password = require(env, USERNAME_ENV), require(env, PASSWORD_ENV)
    if username == admin:
        raise AuthSetupError(
            f"{USERNAME_ENV}={username!r} is MLflow's admin ({ADMIN_USERNAME_ENV}): "
            "give the code server a user of its own"
        )
    # MLflow's clients take their credentials from these variables; from here on this process is the admin
    os.environ[USERNAME_ENV], os.environ[PASSWORD_ENV] = admin, admin_password

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import (
        RESOURCE_ALREADY_EXISTS,
        RESOURCE_DOES_NOT_EXIST,
        ErrorCode,
    )
    from mlflow.server import get_app_client

    def is_error(exc: MlflowException, code: int) -> bool:
        return exc.error_code == ErrorCode.Name(code)

    auth = get_app_client("basic-auth", tracking_uri=uri)
    done = []
    try:
        user = auth.get_user(username)
    except MlflowException as exc:
        if not is_error(exc, RESOURCE_DOES_NOT_EXIST):
            raise
        auth.create_user(username, password)
        done.append(f"created MLflow user {username!r}")
    else:
        if user.is_admin:
            raise AuthSetupError(
                f"MLflow user {username!r} ({USERNAME_ENV}) is an admin: "
                "the code server's user must not be one"
            )
        auth.update_user_password(username, password)
        done.append(f"set the password of MLflow user {username!r} from {PASSWORD_ENV}")

    client = MlflowClient(tracking_uri=uri)
    resources = [
        ("experiment", e.experiment_id, e.name)
        for e in all_pages(client.search_experiments, f"name LIKE '{prefix}/%'")
    ]
    resources += [
        ("registered_model", m.name, m.name)
        for m in all_pages(client.search_registered_models, f"name LIKE '{prefix}-%'")
    ]
    for resource_type, resource_id, name in resources:
        try:
            auth.grant_user_permission(username, resource_type, resource_id, "MANAGE")
        except MlflowException as exc:
            if is_error(exc, RESOURCE_ALREADY_EXISTS):
                continue  # its own resource, or a grant an admin chose: left as it is
            raise
        done.append(f"granted {username!r} MANAGE on {resource_type} {name!r}")
    return done


def all_pages(search: Callable[..., Any], filter_string: str) -> Iterator[Any]:
    """Every result of an MLflow ``search_*`` call, following its page tokens."""
    token = None
    while True:
        page = search(filter_string=filter_string, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="docker/mlflow/auth.py", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="action", required=True)
    serve_parser = commands.add_parser(
        "serve", help="write the auth config from the environment, then exec COMMAND"
    )
    serve_parser.add_argument("command", nargs=argparse.REMAINDER)
    users_parser = commands.add_parser(
        "users", help="create/update the pynomaly user and grant it its resources"
    )
    users_parser.add_argument(
        "--prefix",
        default=DEFAULT_PREFIX,
        help="experiments '<prefix>/*' and registered models '<prefix>-*' (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        if args.action == "serve":
            serve(args.command)  # replaces this process
        else:
            for line in ensure_service_user(prefix=args.prefix):
                print(line, flush=True)
    except AuthSetupError as exc:
        print(f"docker/mlflow/auth.py: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
