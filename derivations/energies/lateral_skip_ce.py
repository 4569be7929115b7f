"""A custom energy: lateral weights, a skip connection, a softmax readout, two time constants.

    E = 1/2 |h_1|^2 + 1/2 |h_2|^2 - x W_1 rho(h_1)^T - rho(h_1) W_2 rho(h_2)^T
        - 1/2 rho(h_1) L_1 rho(h_1)^T - b_1 rho(h_1)^T - b_2 rho(h_2)^T
    z = rho(h_2) W_3 + x S_0_3 + b_3                  (readout logits: not a state)
    C = sum_b [logsumexp(z_b) - d_b . z_b]            (softmax cross-entropy)
    tau_1 dh_1/dt = -dF/dh_1,  tau_2 dh_2/dt = -dF/dh_2,  tau = (1, 2)

Train it:  eqdyn train --energy derivations/energies/lateral_skip_ce.py --arch 64-128-64-10
Derive it: eqdyn derive --energy derivations/energies/lateral_skip_ce.py --arch 64-128-64-10 --check
"""

from eqdyn.symbolic import Energy
from eqdyn.symbolic import terms as T


def energy(sizes):
    if len(sizes) != 4:
        raise ValueError(f"this energy has two hidden layers: sizes (n_in, n_1, n_2, n_out), "
                         f"got {sizes}")
    n_in, n1, n2, n_out = sizes
    x, d = T.layer("x", n_in), T.layer("d", n_out)
    h1, h2 = T.layer("h_1", n1), T.layer("h_2", n2)
    W1, W2, W3 = T.weight("W_1", n_in, n1), T.weight("W_2", n1, n2), T.weight("W_3", n2, n_out)
    b1, b2, b3 = T.bias("b_1", n1), T.bias("b_2", n2), T.bias("b_3", n_out)
    L1 = T.weight("L_1", n1, n1)
    S = T.weight("S_0_3", n_in, n_out)
    internal = (
        T.leak(h1), T.leak(h2),
        T.coupling(x, W1, h1, pre_raw=True), T.coupling(h1, W2, h2),
        T.lateral(h1, L1),
        T.bias_term(b1, h1), T.bias_term(b2, h2),
    )
    logits = T.readout(h2, W3, b3) + x * S
    return Energy(
        internal=internal,
        cost=T.cross_entropy(logits, d),
        states=(h1, h2),
        params=(W1, W2, b1, b2, W3, b3, L1, S),
        inputs=(x, d),
        scalars=(T.BETA,),
        name="lateral_skip_ce",
        tau=(1, 2),
        output=logits,
    )


activation = "sigmoid"
