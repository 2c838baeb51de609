"""A tiny CRNN-style text-line recogniser exported with a dynamic width: image[1,1,32,width] ->
logits[1,width/2,37]. Random weights with non-trivial BatchNorm statistics; torch is needed for
this export only (pip install torch==2.13.0), never by ascend-quant."""

import torch
from torch import nn


class TinyCRNN(nn.Module):
    def __init__(self, classes: int = 37) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 32 -> 16
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d((2, 1)),  # 16 -> 8, width kept
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d((2, 1)),  # 8 -> 4
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(64 * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)  # [N, 64, 4, W/2]
        n, c, h, w = f.shape
        f = f.permute(0, 3, 1, 2).reshape(n, w, c * h)
        return self.head(f)  # [N, W/2, classes] logits


torch.manual_seed(0)
model = TinyCRNN().eval()
for m in model.modules():  # non-trivial BN statistics, as a trained model has
    if isinstance(m, nn.BatchNorm2d):
        m.running_mean.uniform_(-0.2, 0.2)
        m.running_var.uniform_(0.5, 1.5)
x = torch.randn(1, 1, 32, 128)
torch.onnx.export(
    model,
    x,
    "crnn.onnx",
    input_names=["image"],
    output_names=["logits"],
    dynamic_axes={"image": {3: "width"}, "logits": {1: "steps"}},
    opset_version=17,
    dynamo=False,
)
print("exported crnn.onnx")
