"""``spcl_nnunet experiment`` and ``spcl_nnunet demo``: the paper's comparison tables (Tables 2-3),
one path for both.

``methods``: the registry of named recipes of nnU-Net trainers; ``plan``: the configuration and
every check before anything runs; ``commands``: nnU-Net's commands (each in its own session) and
evaluation; ``files``: the working folder's layout, training states and atomic writes;
``progress``: the progress lines; ``runner``: the orchestration (resumable, idempotent, N jobs at
once); ``records`` and ``results``: each run's record and the results.json/csv/md and
learning_curve.png made from them; ``selection``: choosing among runs on validation scans;
``demo``: the demo, an experiment with the ``demo`` schedule.
"""
