"""The backtest report: one HTML page with the metrics and interactive charts (plotly) of the
price with trade markers, the equity curve and the drawdown."""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

MAX_CANDLES_DRAWN = 3000

_METRIC_LABELS = {
    "total_return": ("Total return", "pct"),
    "annual_return": ("Annual return", "pct"),
    "volatility": ("Volatility (annual)", "pct"),
    "sharpe": ("Sharpe", "num"),
    "sortino": ("Sortino", "num"),
    "calmar": ("Calmar", "num"),
    "max_drawdown": ("Max drawdown", "pct"),
    "win_rate": ("Win rate", "pct"),
    "profit_factor": ("Profit factor", "num"),
    "expectancy": ("Expectancy", "num"),
    "total_trades": ("Trades", "int"),
    "exposure": ("Exposure", "pct"),
}


def _fmt(value: Any, kind: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if kind == "pct":
        return f"{value * 100:.2f}%"
    if kind == "int":
        return f"{int(value)}"
    return f"{value:.3f}"


def _fact(value: Any) -> str:
    return f"{value:,.2f}" if isinstance(value, float) else str(value)


def _times(ms: np.ndarray) -> pd.DatetimeIndex:
    return pd.to_datetime(ms, unit="ms", utc=True)


def render_report(
    *,
    title: str,
    candles: pd.DataFrame,
    equity: pd.DataFrame,
    trades: pd.DataFrame,
    metrics: dict[str, Any],
    summary: dict[str, Any],
    plotly_js: str = "inline",
) -> str:
    """The report as a standalone HTML document. ``plotly_js`` is ``"inline"`` (the library is
    embedded: the file works offline) or a URL to load it from."""
    figure = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        row_heights=[0.55, 0.3, 0.15],
        vertical_spacing=0.03,
        subplot_titles=("Price and trades", "Equity", "Drawdown"),
    )
    times = _times(candles["timestamp"].to_numpy())
    if len(candles) <= MAX_CANDLES_DRAWN:
        figure.add_trace(
            go.Candlestick(
                x=times,
                open=candles["open"],
                high=candles["high"],
                low=candles["low"],
                close=candles["close"],
                name="price",
                showlegend=False,
            ),
            row=1,
            col=1,
        )
    else:
        step = int(np.ceil(len(candles) / MAX_CANDLES_DRAWN))
        figure.add_trace(
            go.Scattergl(
                x=times[::step], y=candles["close"].to_numpy()[::step], name="close", line={"width": 1}
            ),
            row=1,
            col=1,
        )
    if len(trades):
        for side, symbol, color in ((1, "triangle-up", "#16a34a"), (-1, "triangle-down", "#dc2626")):
            chosen = trades[trades["side"] == side]
            if len(chosen):
                figure.add_trace(
                    go.Scatter(
                        x=_times(chosen["entry_time"].to_numpy()),
                        y=chosen["entry_price"],
                        mode="markers",
                        marker={"symbol": symbol, "size": 9, "color": color},
                        name="long entry" if side == 1 else "short entry",
                    ),
                    row=1,
                    col=1,
                )
        figure.add_trace(
            go.Scatter(
                x=_times(trades["exit_time"].to_numpy()),
                y=trades["exit_price"],
                mode="markers",
                marker={"symbol": "x", "size": 8, "color": "#111827"},
                name="exit",
                text=trades["exit_reason"],
                hovertemplate="%{text}<br>%{y}<extra>exit</extra>",
            ),
            row=1,
            col=1,
        )
    step = max(1, int(np.ceil(len(equity) / 5000)))
    eq_times = _times(equity["timestamp"].to_numpy()[::step])
    figure.add_trace(
        go.Scattergl(x=eq_times, y=equity["equity"].to_numpy()[::step], name="equity"), row=2, col=1
    )
    figure.add_trace(
        go.Scattergl(
            x=eq_times,
            y=equity["drawdown"].to_numpy()[::step] * 100,
            name="drawdown %",
            fill="tozeroy",
            line={"color": "#dc2626"},
        ),
        row=3,
        col=1,
    )
    figure.update_layout(
        height=900, xaxis_rangeslider_visible=False, template="plotly_white", margin={"t": 40}
    )
    chart = figure.to_html(full_html=False, include_plotlyjs=True if plotly_js == "inline" else plotly_js)
    rows = "".join(
        f"<tr><th>{label}</th><td>{_fmt(metrics.get(key), kind)}</td></tr>"
        for key, (label, kind) in _METRIC_LABELS.items()
    )
    costs = (
        ""
        if summary.get("costs_on", True)
        else '<p class="warn">Costs are OFF in this backtest: commission and slippage were set to zero, '
        "so these results are better than any real account would see.</p>"
    )
    facts = " · ".join(
        html.escape(f"{key.replace('_', ' ')}: {_fact(summary[key])}")
        for key in (
            "symbol",
            "exchange",
            "candles",
            "trades",
            "initial_capital",
            "final_equity",
            "data_source",
        )
        if key in summary
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:24px;color:#111827}}table{{border-collapse:collapse}}
th,td{{padding:4px 12px;border-bottom:1px solid #e5e7eb;text-align:left}}
.warn{{background:#fef3c7;padding:8px}}.facts{{color:#4b5563}}</style></head>
<body><h1>{html.escape(title)}</h1><p class="facts">{facts}</p>{costs}
<table>{rows}</table>{chart}</body></html>"""
