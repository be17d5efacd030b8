"""Studies (docs/reference.md §3-5): a config of experiments expanded into runs, run on either
engine, stored, judged against the paper's findings and drawn.

``config`` (StudyConfig, RunSpec, load_study), ``runner`` (run_study), ``results`` (the store),
``findings`` and ``figures`` (the report), ``oracle`` (the best fixed knob), ``flickr`` (the
Flickr-Mammal partitions for studies), ``distributed_run`` (one run under torchrun).
"""

from training.study.config import RunSpec, StudyConfig, load_study
from training.study.runner import StudyCannotRun, StudyReport, run_study

__all__ = ["RunSpec", "StudyCannotRun", "StudyConfig", "StudyReport", "load_study", "run_study"]
