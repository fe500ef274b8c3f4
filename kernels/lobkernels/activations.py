"""Element-wise activations for the kernels, matching torch.nn.functional."""

import triton
import triton.language as tl


@triton.jit
def softplus(x):
    # torch's F.softplus (beta=1, threshold=20): identity above 20, where exp would overflow in fp32 soon.
    return tl.where(x <= 20.0, tl.log(1.0 + tl.exp(x)), x)

