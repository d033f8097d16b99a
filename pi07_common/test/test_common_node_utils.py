"""node_utils.set_torch_threads: what the model nodes' `torch_threads` parameter does to this process."""
import torch
from pi07_common.node_utils import set_torch_threads


def test_set_torch_threads_sets_the_count_and_zero_keeps_it():
    before = torch.get_num_threads()
    try:
        set_torch_threads(2)
        assert torch.get_num_threads() == 2
        set_torch_threads(0)   # 0: leave torch's setting alone
        assert torch.get_num_threads() == 2
        set_torch_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
