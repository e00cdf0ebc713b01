"""`python -m east_ray.study NAME`: a whole EAsT study on Ray Tune + Optuna, then its tables.

The one package that knows Ray Tune and Optuna (`tune`, `search`); `cli` is the command,
`data_source` and `stages` make sure the data exists, `estimate` prices a grid before it
runs, `results` stores results and renders tables. Steps:
1. load and validate `studies/NAME.toml` (one study, or several it `includes`: one part
   per dataset), expand the canonical cells, print their count;
2. make sure the data exists: a missing dataset is prepared from its release under
   `--raw` (downloaded first with `--download`; the demo renders SynthMIC); every part
   extracts its teachers (idempotent) and fits Teacher_LR per (teacher, fraction, seed);
3. read each dataset's spectrograms once with Ray Data into the object store (shared
   zero-copy by every trial on a node) and hand labels and teacher arrays to the trials
   with `tune.with_parameters`;
4. run the cells of every part that have no result yet in one Tune run: `OptunaSearch`
   over the pending cells, each queued as a trial whose parameters are its axes (journal
   storage next to the results, `east_ray.study.search`), each trial the shared trainer
   with its part's resources, `max_concurrent_trials` sized to the cluster, failed trials
   retried;
5. per part, write `results.parquet` (one row per run plus the Teacher_LR rows) and
   render the paper's tables (terminal, Markdown, LaTeX) and the limited-data figure (PNG).

Resuming is by cell, not by Tune experiment: each cell trains in
`<storage>/<study>/cells/<cell_id>/`, checkpointing every epoch, and writes `result.json`
when done. Running the command again (after Ctrl-C, a killed driver, a lost node, or an
edited spec) runs exactly the cells without a result, resuming each from its last
checkpoint; when nothing is left it only prints the tables. That is why the runner never
needs `Tuner.restore`, and why added cells simply join the next run.
"""
