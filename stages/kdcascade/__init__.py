"""Library shared by the stage scripts: schedule, data, models, losses, training, evaluation."""
