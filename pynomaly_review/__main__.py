"""Serve the review page: ``python -m pynomaly_review [--host 127.0.0.1] [--port 3100]``.

Settings come from the environment (:meth:`pynomaly_review.web.ReviewSettings.from_env`).
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pynomaly_review", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=3100, help="port to listen on")
    args = parser.parse_args(argv)
    import uvicorn

    from pynomaly_review.web import ReviewSettings, create_app

    settings = ReviewSettings.from_env()
    app = create_app(settings)
    print(
        f"review page on http://{args.host}:{args.port}/ (warehouse "
        f"{_shown(settings.warehouse_url)}, reviewer "
        f"{'from the proxy' if settings.trust_proxy else settings.reviewer or 'unset'})",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, proxy_headers=False, log_level="info")
    return 0


def _shown(url: str) -> str:
    import sqlalchemy as sa

    return sa.make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    raise SystemExit(main())
