#pragma once
// Shows one image as large as the widget allows, aspect kept; small model outputs are enlarged
// with sharp pixels instead of blur. Draws a placeholder text when empty.
#include <QImage>
#include <QWidget>

namespace kto::ui {

class ImageView : public QWidget {
    Q_OBJECT
public:
    explicit ImageView(QWidget* parent = nullptr);
    void setImage(const QImage& image);
    void setPlaceholder(const QString& text);
    const QImage& image() const { return image_; }
    QSize sizeHint() const override { return {256, 256}; }

protected:
    void paintEvent(QPaintEvent* event) override;

private:
    QImage image_;
    QString placeholder_;
};

}  // namespace kto::ui
