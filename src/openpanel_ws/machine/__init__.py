"""Host adapters (psutil, log files)."""
