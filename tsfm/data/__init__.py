"""Data: user tables in (loading, tables, columns, timestamps, rows, grid, freq, validation) as a
SeriesSet (series_set), forecast frames out (forecast_frame), windows, GluonTS adapters, corpora."""
