"""The old home of the kcmp identity pass, now criu_model/collect/sharing.py.

A re-export kept only for scripts/bench/bench_kcmp.py (outside the package);
the package itself imports criu_model.collect.sharing.
"""

from criu_model.collect.sharing import FdKey, SharingStats, assign_file_ids, task_shares

__all__ = ["FdKey", "SharingStats", "assign_file_ids", "task_shares"]
