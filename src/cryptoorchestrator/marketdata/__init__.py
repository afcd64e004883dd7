"""Market data: the Parquet candle store, timeframes, resampling, file import and synthetic candles.

Modules (imported explicitly; nothing is built at import time):

* :mod:`.timeframes`: ccxt timeframe strings, lengths in ms, bucket alignment;
* :mod:`.store`: :class:`~.store.CandleStore`, one Parquet file per exchange, symbol and timeframe;
* :mod:`.resample`: exact resampling to larger timeframes, complete buckets only;
* :mod:`.importer`: CSV / JSON / feather / Parquet import with row-numbered validation;
* :mod:`.synthetic`: deterministic regime-switching candles for offline use;
* :mod:`.validation` and :mod:`.naming`: shared row rules and dataset file names.
"""
