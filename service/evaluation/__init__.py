"""How good a version is: the evaluation report (report.py), torch-free, shared by training and serving."""

from service.evaluation.report import EvaluationReport, decode_report, encode_report, evaluation_report

__all__ = ["EvaluationReport", "decode_report", "encode_report", "evaluation_report"]
