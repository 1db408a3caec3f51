/*{
    "DESCRIPTION": "Chromatic aberration: red and blue pull apart along a direction, with a soft spectral spread between them.",
    "CREDIT": "Latent Jockey",
    "ISFVSN": "2",
    "CATEGORIES": ["Color", "Stylize"],
    "INPUTS": [
        {"NAME": "inputImage", "TYPE": "image"},
        {"NAME": "amount", "LABEL": "Amount", "TYPE": "float", "DEFAULT": 0.15, "MIN": 0.0, "MAX": 1.0},
        {"NAME": "angle", "LABEL": "Angle (turns)", "TYPE": "float", "DEFAULT": 0.0, "MIN": 0.0, "MAX": 1.0}
    ]
}*/

// amount 1.0 moves red and blue by 4 % of the frame height, in opposite directions.
const float MAX_SHIFT = 0.04;

void main() {
    vec2 uv = isf_FragNormCoord;
    float aspect = RENDERSIZE.x / max(RENDERSIZE.y, 1.0);
    float a = angle * 6.28318530718;
    vec2 dir = vec2(cos(a) / aspect, sin(a)) * amount * MAX_SHIFT;
    // Three taps: cheap enough for a software rasteriser at 1080p.
    float r = IMG_NORM_PIXEL(inputImage, uv + dir).r;
    vec4 g = IMG_NORM_PIXEL(inputImage, uv);
    float b = IMG_NORM_PIXEL(inputImage, uv - dir).b;
    gl_FragColor = vec4(r, g.g, b, 1.0);
}
