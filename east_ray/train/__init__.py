"""Training one cell, without Ray: the trial's arrays and batches (`data`), the EAsT trainer
(`trainer`), the Teacher_LR baseline (`teacher_lr`), and `python -m east_ray.train` to
train one cell in a plain process (`cli`)."""
