"""Training a cohort (SPEC §3): the schedule, the learner seam, TF1 Adam, evaluation and the loop."""
from .evaluation import evaluate
from .loop import train_cohort
from .schedule import MemberResult, MemberStart, Schedule
from .state import CohortLearner, CohortState, Learner, Optimizer, train_weights

__all__ = ["CohortLearner", "CohortState", "Learner", "MemberResult", "MemberStart", "Optimizer", "Schedule",
           "evaluate", "train_cohort", "train_weights"]
