"""Helpers the benchmark scripts share."""
import statistics as stats
import time


def train_step_seconds(model, optimizer, data, runs):
    """Median time of ``runs`` training steps (loss, backward, optimizer
    step) on ``data`` = (inputs, data_samples), after one warm-up step."""
    times = []
    for i in range(runs + 1):
        start = time.perf_counter()
        loss, _ = model.parse_losses(model.loss(*data))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i:  # the first step warms up
            times.append(time.perf_counter() - start)
    return stats.median(times)
