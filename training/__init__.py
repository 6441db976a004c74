"""The offline half of imgcls: data, models, parameter updates, training, calibration, export, publishing."""
