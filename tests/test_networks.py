import pytest
import torch

from networks import FlipAveraged, UNet


@pytest.mark.parametrize(
    "kwargs, input_shape, output_channels",
    [
        ({}, (2, 1, 64, 64), 1),
        ({"in_channels": 3, "out_channels": 4, "features": 8}, (1, 3, 32, 48), 4),
        ({"depth": 2, "features": 4, "upsample": "nontrainable", "dropout": 0.3}, (2, 1, 16, 16), 1),
        ({"spatial_dims": 3, "depth": 2, "features": 4}, (1, 1, 16, 16, 8), 1),
    ],
)
def test_output_keeps_spatial_shape(kwargs, input_shape, output_channels):
    net = UNet(**kwargs).eval()
    with torch.no_grad():
        out = net(torch.rand(input_shape))
    assert out.shape == (input_shape[0], output_channels, *input_shape[2:])


def test_seed_configuration_matches_buda_parameter_count():
    # Buda's brain-segmentation-pytorch U-Net (init_features=32, 4 levels, bias-free convs + BN) has 7.76 M weights.
    assert sum(p.numel() for p in UNet().parameters()) == 7_762_465


def test_block_widths_double_per_level():
    net = UNet(features=4, depth=3)
    assert [enc[1].conv.out_channels for enc in net.encoders] == [4, 8, 16]
    assert net.bottleneck[1].conv.out_channels == 32


def test_dropout_and_upsampling_choice_are_applied():
    assert any(isinstance(m, torch.nn.Dropout) for m in UNet(features=4, depth=1, dropout=0.5).modules())
    assert not any(isinstance(m, torch.nn.Dropout) for m in UNet(features=4, depth=1).modules())
    assert any(isinstance(m, torch.nn.ConvTranspose2d) for m in UNet(features=4, depth=1, upsample="deconv").modules())
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in UNet(features=4, depth=1, upsample="nontrainable").modules())


def test_indivisible_input_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="divisible by 16"):
        UNet(features=4)(torch.rand(1, 1, 40, 40))


def test_depth_must_be_positive():
    with pytest.raises(ValueError, match="depth"):
        UNet(depth=0)


def test_flip_averaging_lines_the_flipped_outputs_up_with_the_input():
    """A network that marks where each output came from: x -> x + column index. Averaged over a left-right flip,
    the flipped pass's marks come back in the same places, so the result is x + the mean of j and W-1-j."""
    class ColumnMark(torch.nn.Module):
        def forward(self, x):
            return x + torch.arange(x.shape[2], dtype=x.dtype)[:, None]  # spatial axis 0 (dim 2)

    x = torch.randn(2, 1, 4, 3)
    averaged = FlipAveraged(ColumnMark(), spatial_axes=[0])(x)
    assert torch.allclose(averaged, x + 1.5)  # (j + (3 - j)) / 2 on a 4-long axis
    assert torch.allclose(FlipAveraged(ColumnMark(), spatial_axes=[])(x), ColumnMark()(x))


def test_flip_averaging_keeps_the_weights_of_the_wrapped_network():
    unet = UNet(spatial_dims=2, in_channels=1, out_channels=1, features=2, depth=1)
    wrapped = FlipAveraged(unet, [0, 1])
    assert set(wrapped.state_dict()) == {f"network.{key}" for key in unet.state_dict()} and len(wrapped.dims) == 2
