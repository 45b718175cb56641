"""Training's Adam: fused on the CPU, the update of torch's per-tensor Adam."""

from __future__ import annotations

import torch

from uvac.training.optimizer import adam, load_adam_state


def test_adam_is_fused_on_the_cpu_and_steps_as_the_per_tensor_loop() -> None:
    torch.manual_seed(0)
    shapes = [(64, 40), (64,), (3, 64)]
    start = [torch.randn(shape) for shape in shapes]
    fused_parameters = [torch.nn.Parameter(tensor.clone()) for tensor in start]
    loop_parameters = [torch.nn.Parameter(tensor.clone()) for tensor in start]
    fused = adam(fused_parameters, learning_rate=1e-3, device=torch.device("cpu"))
    loop = torch.optim.Adam(loop_parameters, lr=1e-3, foreach=False)
    assert fused.param_groups[0]["fused"] is True
    for step in range(5):
        gradients = [torch.randn(shape) * 10.0**-step for shape in shapes]
        for parameters, optimizer in ((fused_parameters, fused), (loop_parameters, loop)):
            for parameter, gradient in zip(parameters, gradients, strict=True):
                parameter.grad = gradient.clone()
            optimizer.param_groups[0]["lr"] = 1e-3 * 0.9**step
            optimizer.step()
    moved = [
        not torch.equal(parameter, tensor)
        for parameter, tensor in zip(fused_parameters, start, strict=True)
    ]
    assert all(moved)
    for fused_parameter, loop_parameter in zip(fused_parameters, loop_parameters, strict=True):
        torch.testing.assert_close(fused_parameter, loop_parameter, rtol=1e-6, atol=1e-6)


def test_loaded_state_takes_its_parameters_layout_and_resumes_the_same_steps() -> None:
    """A checkpoint holds contiguous moments; a channels-last weight's must be so again."""
    torch.manual_seed(0)
    weight = torch.randn(8, 3, 4, 4).to(memory_format=torch.channels_last)
    gradients = [torch.randn_like(weight) for _ in range(3)]
    straight = torch.nn.Parameter(weight.clone())
    straight_optimizer = adam([straight], learning_rate=1e-2, device=torch.device("cpu"))
    resumed = torch.nn.Parameter(weight.clone())
    for gradient in gradients[:2]:
        straight.grad = gradient.clone()
        straight_optimizer.step()
    # What a checkpoint keeps after the first step: the moments as contiguous tensors.
    first = torch.nn.Parameter(weight.clone())
    first_optimizer = adam([first], learning_rate=1e-2, device=torch.device("cpu"))
    first.grad = gradients[0].clone()
    first_optimizer.step()
    saved = first_optimizer.state_dict()
    saved["state"] = {
        key: {name: value.contiguous() for name, value in values.items()}
        for key, values in saved["state"].items()
    }
    with torch.no_grad():
        resumed.copy_(first)
    resumed_optimizer = adam([resumed], learning_rate=1e-2, device=torch.device("cpu"))
    load_adam_state(resumed_optimizer, saved)
    resumed.grad = gradients[1].clone()
    resumed_optimizer.step()
    assert resumed_optimizer.state[resumed]["exp_avg"].stride() == resumed.stride()
    assert torch.equal(resumed, straight)
