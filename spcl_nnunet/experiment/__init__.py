"""``spcl_nnunet experiment``: the paper's comparison tables (Tables 2-3) for a converted dataset.

``methods`` is the registry of named recipes of nnU-Net trainers, ``runner`` runs them through
nnU-Net's own commands (resumable, idempotent, N at once), ``results`` turns the finished runs
into results.json/csv/md and learning_curve.png.
"""
