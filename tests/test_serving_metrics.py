from opsnb.serving.metrics import ServiceMetrics


def test_each_app_has_its_own_registry_with_the_service_metrics():
    first, second = ServiceMetrics(), ServiceMetrics()
    first.batch_rows.observe(3)
    first.errors.labels("contract").inc()
    text = first.render().decode()
    assert "opsnb_batch_rows_sum 3.0" in text
    assert 'opsnb_errors_total{kind="contract"} 1.0' in text
    assert "process_cpu_seconds_total" in text
    assert "opsnb_batch_rows_sum 0.0" in second.render().decode()
